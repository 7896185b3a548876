"""The profiling agent: a small program that measures one artifact in a process of its own and
answers in JSON lines, and the client side that starts it and reads that answer.

The agent (everything here but ``client.py`` and ``bundle.py``) uses only the standard
library, ``harness/timing.py`` and the runtime it measures, so it runs on a host with no
vitbench installed: ``bundle.py`` packs it into one zipapp for the remote targets. On this
machine it runs as ``python -m targets.agent``.

===============  =========================================================================
protocol.py      the request and answer: versions, actions, events, errors, input shapes
probes.py        what could bias a number: CPU, load, temperature, thermal state, machine
memory.py        peak resident memory of the agent's process
lifeline.py      the agent ends with its caller: parent-death signal, parent watch, stdin
runtimes.py      the Runtime contract and the ONNX Runtime, ExecuTorch and PyTorch runtimes
pte.py           an ExecuTorch program's delegates and planned memory, read without exir
coreml.py        Core ML: the runtime (macOS), spec reading and the compute plan
registry.py      which runtimes an agent offers: built-ins plus ``vitbench.runtimes`` plugins
service.py       the actions (describe, profile, infer, inspect) and ``main``
client.py        vitbench's side: start the agent, stream its answer, build its requests
bundle.py        the agent as one content-hashed zipapp for another host
===============  =========================================================================
"""
