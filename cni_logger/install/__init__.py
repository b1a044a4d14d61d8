"""Putting the plugin into a node's CNI setup (the launcher, install, uninstall); never on the plugin's path."""
