"""The petitioner portal (``/p/``): identity by SMS code, portal sessions, online petitions
and requests for video visits. See docs/portal.md."""
