"""The agent runtime: the tool loop, runs as channel-layer consumers, run events and run control."""
