"""One class per LUNA service client, each refusing to be built: no service is configured."""

from ...exceptions import LunaServicesNotConfigured


def unconfigured(name, setting):
    def __init__(self, *args, **kwargs):
        raise LunaServicesNotConfigured(
            f"{name} needs the LUNA service setting {setting} (from the Luna-Configurator), which this "
            "platform does not provide; call the service over HTTP with its address in the lambda's `env` parameters"
        )

    return type(name, (), {"__init__": __init__, "__doc__": f"Client of a LUNA service ({setting}); not configured here."})


Clients = unconfigured("Clients", "LUNA_*_ADDRESS")
TasksClients = unconfigured("TasksClients", "LUNA_TASKS_ADDRESS")
AgentClients = unconfigured("AgentClients", "LUNA_VIDEO_MANAGER_ADDRESS")
