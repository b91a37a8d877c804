"""Constants that several packages must agree on, defined once.

Pure: this module imports nothing from the project, so any package (the planner, the
router, the simulator, the live ingress, the engines) may import it without a cycle.
"""

from __future__ import annotations

# Latency objectives a request is held to unless it says otherwise: time to first token
# and time per output token. The live router and the simulator score replicas against
# these, and the simulator's goodput counts requests that meet both.
SLO_TTFT_S = 2.0
SLO_TPOT_S = 0.1

# Requests one replica may queue beyond its batch before the router stops sending it more
# (past every eligible replica's bound the endpoint answers 429). The simulator uses the
# same bound so that its rejections are the ones the live endpoint would make.
MAX_WAITING = 64

# Seconds over which recent load (prompt tokens admitted per second) decays: the live
# router's ledger and the simulated replicas use the same window, so the routing policy
# sees the same figure in both.
LOAD_WINDOW_S = 10.0

# Each GPU group (or CPU node) of node type T advertises one unit of the Ray custom
# resource "gpu_group:T"; replicas and builds ask for it to land on that node type.
GPU_GROUP_PREFIX = "gpu_group:"


def gpu_group_resource(node_type: str) -> str:
    """The Ray custom resource that each GPU group of ``node_type`` advertises."""
    return f"{GPU_GROUP_PREFIX}{node_type}"

# Characters per token where no tokenizer counts a text: the router's fallback, an
# upstream without a GGUF, the simulated engine
CHARS_PER_TOKEN = 4.0

# The header a request names its routing policy in (serving.policy_header), and that
# `orchestrator bench --trace` sends
POLICY_HEADER = "x-orchestrator-policy"

# The routing policies `orchestrator bench --trace` compares unless told otherwise: ours
# and Ray Serve's default.
BENCH_POLICIES = ("slo_aware", "power_of_two")
