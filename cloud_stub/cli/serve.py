"""`cloud-stub serve`: the HTTP API under uvicorn, and the MQTT link to the broker."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from cloud_stub.api import create_app
from cloud_stub.cli._common import add_deployment_args, check_deployment_dir, guarded
from cloud_stub.mqtt import CloudMqtt, MqttOptions
from cloud_stub.provision.offline import readable_decisive_keys
from cloud_stub.services.cloud_service import CloudService
from protocol.bundle import DeploymentLayout

log = logging.getLogger(__name__)


def api_url_mismatch(api_url: str, port: int) -> str | None:
    """A warning when devices would upload to another port than `serve` listens on
    (`api.url` in deployment.toml goes into every token's upload URL), else None. A
    reverse proxy in front may make that right, so this only warns."""
    try:
        url = urlsplit(api_url)
        url_port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    except ValueError:
        return f"api.url {api_url!r} in deployment.toml is not a URL"
    if url_port == port:
        return None
    return (
        f"serve listens on port {port} but api.url in deployment.toml is {api_url}: tokens "
        f"tell devices to upload evidence there, so uploads will not reach this server "
        f"unless a proxy forwards them (serve --port {url_port}, or correct api.url)"
    )


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    check_deployment_dir(args.deployment)
    held = readable_decisive_keys(DeploymentLayout(args.deployment))
    if held:  # before the store is opened, a port bound or the broker reached
        for path, what in held:
            print(f"cloud-stub serve: refusing to start: {path} is {what} and this host can "
                  "read it; move it off the service host (docs/threat-model.md)",
                  file=sys.stderr)
        return 1
    service = CloudService.open(args.deployment, store_url=args.store_url)
    warning = api_url_mismatch(service.core.settings.api.url, args.port)
    if warning is not None:
        log.warning("%s", warning)
    link: CloudMqtt | None = None
    if not args.no_mqtt:
        options = MqttOptions.from_service(service, host=args.broker_host, port=args.broker_port)
        link = CloudMqtt(service, options)
        link.start()
    app = create_app(service)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=True)
    finally:
        if link is not None:
            link.stop()
        service.close()
    return 0


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the HTTP API and the MQTT link")
    add_deployment_args(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--broker-host", default=None,
                       help="broker address (default: deployment.toml's broker.host)")
    serve.add_argument("--broker-port", type=int, default=None,
                       help="broker port (default: deployment.toml's broker.port)")
    serve.add_argument("--no-mqtt", action="store_true",
                       help="run the API only; issued tokens wait until a link publishes them")
    serve.set_defaults(handler=guarded("serve", _serve))


