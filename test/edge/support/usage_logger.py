"""LiteLLM callback for the edge suite: one JSON line per logged call (what LiteLLM bills).

LiteLLM loads it by module path from the folder of its config file (`callbacks:
usage_logger.usage_logger_instance`); the line goes to $MIX2API_EDGE_USAGE_LOG.
"""
import json
import os

from litellm.integrations.custom_logger import CustomLogger


def _usage(response_obj):
    usage = getattr(response_obj, "usage", None) if response_obj is not None else None
    if usage is None:
        return None
    try:
        return usage.model_dump()
    except AttributeError:
        return dict(usage)


class UsageLogger(CustomLogger):
    def _write(self, outcome, kwargs, response_obj):
        slo = kwargs.get("standard_logging_object") or {}
        exc = kwargs.get("exception")
        line = {
            "outcome": outcome,
            "status": slo.get("status"),
            "model": slo.get("model_group") or kwargs.get("model"),
            "stream": bool(kwargs.get("stream")),
            "usage": _usage(response_obj),
            "prompt_tokens": slo.get("prompt_tokens"),
            "completion_tokens": slo.get("completion_tokens"),
            "response_cost": slo.get("response_cost"),
            "error": str(exc) if exc is not None else None,
        }
        with open(os.environ["MIX2API_EDGE_USAGE_LOG"], "a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write("success", kwargs, response_obj)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write("failure", kwargs, response_obj)


usage_logger_instance = UsageLogger()
