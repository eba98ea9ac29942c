"""The one place that knows the agent's optional services.

Each service is imported inside `optional_services`, behind the configuration switch
that turns it on, so a service whose switch is off is never imported and loads none of
its libraries (docs/adr/0019-agent-memory-and-uplink-benchmarks.md). The imports are
named statically: the import graph (and the layers contract in pyproject.toml) sees
them.
"""

from __future__ import annotations

from device.service import AgentContext, Service


def optional_services(context: AgentContext) -> list[Service]:
    """The services the configuration turns on, in start order: the release side
    (`[mqtt] enabled`), then the Home Assistant bridge (`[home_assistant] enabled`).
    Raises what the services' builders raise (ConfigError for a bad setting)."""
    config = context.config
    services: list[Service] = []
    if config.mqtt.enabled:
        from device.release.supervisor import make_service as release_service

        release = release_service(context)
        if release is not None:
            services.append(release)
    if config.home_assistant.enabled:
        from device.homeassistant import make_service as home_assistant_service

        bridge = home_assistant_service(context)
        if bridge is not None:
            services.append(bridge)
    return services
