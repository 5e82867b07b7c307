"""Python dialplan modules shipped with pbx_python (CallService and INITSERVICE live in callservice)."""
