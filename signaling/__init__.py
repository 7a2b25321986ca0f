"""WebRTC signaling over socket.io (namespace ``/visit``)."""
