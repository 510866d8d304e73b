"""Example gridpilot node checks, discovered through the ``gridpilot.checks`` entry points."""
