-- Argo CD health of a fleet.scaleset.dev ScaleSet, from the conditions the operator writes.
hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end
local conditions = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    conditions[condition.type] = condition
  end
end
local function describe(condition)
  local text = condition.reason or ""
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end
local stalled = conditions["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local ready = conditions["Ready"]
local reconciling = conditions["Reconciling"]
-- Reconciling=True (work left) outweighs a Ready=True not yet rewritten, as it does for kstatus.
if ready ~= nil and ready.status == "True" and not (reconciling ~= nil and reconciling.status == "True") then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
local upgrade = obj.status.upgrade or {}
if (obj.spec ~= nil and obj.spec.paused == true) or upgrade.phase == "Paused" then
  -- Paused by spec.paused, or a Manual-mode rollout waiting for the next walk.
  hs.status = "Suspended"
  hs.message = upgrade.message or "Paused"
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
