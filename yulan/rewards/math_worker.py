"""math-verify as a worker: one JSON line [answer, reference] in, `true` or `false` out. Run by
yulan.rewards.answers.MathVerify, which kills it when a check runs too long."""

import json
import sys

try:
    from math_verify import parse, verify
except ImportError as error:
    print(f"missing: {error}", flush=True)
    raise SystemExit(1) from None


def equal(answer: str, reference: str) -> bool:
    try:
        gold = parse(f"${reference}$", parsing_timeout=5)
        predicted = parse(f"${answer}$", parsing_timeout=5)
        return bool(gold and predicted and verify(gold, predicted, timeout_seconds=5))
    except Exception:  # a model's output never stops scoring
        return False


if __name__ == "__main__":
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            answer, reference = json.loads(line)
            verdict = equal(str(answer), str(reference))
        except ValueError:
            verdict = False
        print("true" if verdict else "false", flush=True)
