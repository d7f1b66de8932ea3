#!/usr/bin/env bash
# A complete rollback driven with curl, from the plan to the last stage.
#
#   AFTERSHOCK_API=http://127.0.0.1:8000 TOKEN=ash_... docs/rollback_with_curl.sh
#
# TOKEN needs the ramp scope. Each advance is refused (409) until the stage's hold has passed
# and its guardrails say "advance"; the script then waits and asks again, and stops if the
# guardrails pause the plan. FORCE_REASON="..." (admin token) forces refused advances
# instead of waiting: for demos and tests only, and every forced step is audited.
set -euo pipefail
API=${AFTERSHOCK_API:-http://127.0.0.1:8000}
auth=(-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json")

# 1. Plan the rollback from the experiment's latest analysis (201; the same key replays).
plan=$(curl -sSf "${auth[@]}" -H "Idempotency-Key: plan-chat-model-$(date +%Y%m%d)" \
  -d '{"experiment_id": "chat-model-upgrade", "rollback_value": "previous-model",
       "current_value": "new-model"}' \
  "$API/v1/features/chat-model/plans")
id=$(jq -r .id <<<"$plan")
last=$(( $(jq '.stages | length' <<<"$plan") - 1 ))
echo "plan $id: $(jq -r .reason <<<"$plan")"

# 2. Advance stage by stage, each time with the version just read (If-Match).
while :; do
  ramp=$(curl -sSf "${auth[@]}" "$API/v1/plans/$id/ramp")
  stage=$(jq -r .current_stage <<<"$ramp")
  version=$(jq -r .version <<<"$ramp")
  [ "$stage" -eq "$last" ] && break
  answer=$(curl -sS "${auth[@]}" -X POST -d '{}' \
    -H "Idempotency-Key: advance-$id-v$version" -H "If-Match: \"$version\"" \
    -w '\n%{http_code}' "$API/v1/plans/$id/advance")
  status=$(tail -n1 <<<"$answer")
  body=$(sed '$d' <<<"$answer")
  case "$status" in
    200) echo "stage $(jq -r .current_stage <<<"$body") applied (version $(jq -r .version <<<"$body"))" ;;
    409)
      decision=$(jq -r '.guardrails.action // "refused"' <<<"$body")
      [ "$decision" = "pause" ] && { echo "guardrails paused plan $id: $(jq -r .detail <<<"$body")"; exit 1; }
      if [ -n "${FORCE_REASON:-}" ]; then
        curl -sSf "${auth[@]}" -X POST -d "{\"force\": true, \"reason\": \"$FORCE_REASON\"}" \
          -H "Idempotency-Key: force-$id-v$version" -H "If-Match: \"$version\"" \
          "$API/v1/plans/$id/advance" >/dev/null
        echo "stage $((stage + 1)) forced ($decision): $FORCE_REASON"
      else
        echo "waiting: $(jq -r .detail <<<"$body")"
        sleep "${POLL_SECONDS:-3600}"
      fi ;;
    *) echo "advance failed ($status): $body" >&2; exit 1 ;;
  esac
done

# 3. The audit trail: every change and refusal, with actor, before/after and figures.
curl -sSf "${auth[@]}" "$API/v1/audit?plan_id=$id" | jq -r '.data[] | "\(.at) \(.actor) \(.action) \(.outcome) stage \(.stage)"'
