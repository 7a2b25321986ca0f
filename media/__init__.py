"""The SFU: rooms, participants and tracks; forwards encoded media without transcoding."""
