from django.apps import AppConfig


class McpRemoteConfig(AppConfig):
    name = "mcp_remote"
    verbose_name = "Remote MCP servers"
