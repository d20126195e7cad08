"""``--adjudicator labels``: the history's own labels answer in place of the frontier model.

It is an :class:`~pipeline.adjudication.backends.Adjudicator`, so escalations and audits still go through the
stream's :class:`~pipeline.adjudication.stage.AdjudicationStage` (answer checks, outcomes, labels) and only the
call is replaced. Its reply is the tool call a frontier would make: the post's history label as the category, the
policy's action for it as the decision (allow for the safe class). It reports no token usage, so the stage prices
it at zero; the backtest reports the would-be cost (calls times the policy's estimate per post) beside it.

The post is found by its text, read back from between the request's nonce delimiters (the request carries no
post id); a text the history does not hold is a bug in the caller and raises.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.adjudication.backends import FrontierReply, TokenUsage
from pipeline.adjudication.limits import AdjudicationLimits
from pipeline.adjudication.prompt import TOOL_NAME, FrontierRequest
from pipeline.policy import Policy

# The history's labels answer at once and never fail: no rate limit, no retries to wait for.
LABELS_LIMITS = AdjudicationLimits(concurrency=256, rate_per_s=1e9, burst=1_000_000, max_attempts=1)
RATIONALE = "the history's label (backtest: no frontier call)"


class LabelsAdjudicator:
    provider = "labels"

    def __init__(self, policy: Policy, labels: Mapping[str, str]) -> None:
        """``labels``: post text → its history label."""
        self.policy = policy
        self.labels = dict(labels)
        self.calls = 0

    def add(self, labels: Mapping[str, str]) -> None:
        self.labels.update(labels)

    async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
        text = post_text(request)
        label = self.labels.get(text)
        if label is None:
            raise KeyError(f"the backtest's labels adjudicator has no label for the post {text[:60]!r}")
        self.calls += 1
        safe = label == self.policy.taxonomy.safe
        decision = "allow" if safe else self.policy.categories[label].action
        return FrontierReply(
            content=[{"type": "tool_use", "name": TOOL_NAME,
                      "input": {"category": label, "decision": decision, "rationale": RATIONALE}}],
            stop_reason="tool_use", usage=TokenUsage(), model="history-labels", reply_id=f"labels-{self.calls}")

    async def aclose(self) -> None:
        return None


def post_text(request: FrontierRequest) -> str:
    """The post between the request's delimiters (:func:`pipeline.adjudication.prompt.user_message`)."""
    start = f"<<<POST {request.nonce}>>>\n"
    end = f"\n<<<END POST {request.nonce}>>>"
    head = request.user.index(start) + len(start)
    return request.user[head:request.user.rindex(end)]
