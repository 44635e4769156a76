"""ASGI entry point: HTTP through Django, websockets through Channels (authenticated in connect);
on the embedded defaults, the lifespan runs the private Redis while the portal serves."""

import asyncio
import contextlib
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshadmin.settings.dev")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs the apps loaded
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from meshadmin.embedded import using_private_redis  # noqa: E402
from meshadmin.routing import websocket_urlpatterns  # noqa: E402


async def lifespan(scope, receive, send) -> None:
    """ASGI lifespan: the private Redis (when ``REDIS_URL`` names none) from start-up to shutdown."""
    with contextlib.ExitStack() as stack:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(stack.enter_context, using_private_redis(settings.EMBEDDED_REDIS_DIR))
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": f"the private Redis: {error}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(stack.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "lifespan": lifespan,
    }
)
