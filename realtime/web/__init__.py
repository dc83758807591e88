"""Browser view of every camera: FastAPI app, live hub (MJPEG + Server-Sent Events), history pages."""

from realtime.web.app import ServerHandle, create_app, start_server
from realtime.web.auth import new_token
from realtime.web.hub import LiveHub

__all__ = ["LiveHub", "ServerHandle", "create_app", "new_token", "start_server"]
