"""Clients of the LUNA services (`request.clients`). This platform configures no LUNA service,
so these names import (code written for the original keeps loading) but using one raises
LunaServicesNotConfigured with what to do instead. Call the services over HTTP with their
addresses in the lambda's `env` parameters."""

from ._unconfigured import AgentClients, Clients, TasksClients

__all__ = ["AgentClients", "Clients", "TasksClients"]
