"""Hosts that run the profiling agent, on this machine or over SSH.

=============  ===========================================================================
config.py      the hosts file (``~/.config/vitbench/hosts.toml``): one table per host
transport.py   where the agent runs: this machine, or another one through OpenSSH
target.py      RemoteTarget, the "remote" target (targets/apple.py builds on it)
=============  ===========================================================================
"""
