"""roopik-rl-mcp: evaluation -> feedback -> preference data -> fine-tuning, as MCP tools."""

__version__ = "0.1.0"
