-- Argo CD health check for every Tollhouse custom resource (group tollhouse.dev): Stage,
-- ApiRoute, UsagePlan and Authorizer today, and each later kind that keeps the same status
-- convention. One script, installed under one argocd-cm key per kind (argocd-cm.yaml); the
-- meaning of each answer is in docs/argocd.md.
--
-- Contract: Argo CD sets the global `obj` to the live object converted from JSON (objects
-- become tables, arrays tables indexed from 1; a null member is left out, a null element leaves
-- a hole) and reads the table this chunk returns: `status`, one of Healthy, Progressing,
-- Degraded, Suspended, Missing, Unknown, and `message`. It runs the chunk with gopher-lua
-- (Lua 5.1) and, unless useOpenLibs is set, only the base, table and os libraries: no `string`
-- or `math`, no methods on strings, no goto. An error is shown instead of a health, so nothing
-- here may fail on a missing or ill-typed field.
--
-- The convention: status.observedGeneration, and status.conditions[] with type, status
-- (True/False/Unknown), reason, message and observedGeneration, of the types Accepted (the
-- spec is valid), ResolvedRefs (its references resolve), Programmed (every connected dataplane
-- serves this generation) and Ready (all of the above, and nothing else stands in the way).
--
-- The answers, first match wins:
--   no status; a status or condition for an older generation    Progressing  waiting for ...
--   status.conditions not a list                                 Unknown
--   Accepted or ResolvedRefs False                               Degraded     reason: message
--   Programmed not True (NotProgrammed means: see Ready)         Progressing  reason: message
--   Ready True                                                   Healthy      Ready's message
--   Ready False waiting for dataplanes (Pending, NoDataplanes)   Progressing  reason: message
--   Ready False for another reason (NoReadyEndpoints, NotServed) Degraded     reason: message
--   no Ready yet, or Ready Unknown                               Progressing  waiting for ...

local WAITING = "waiting for the Tollhouse controller"

local function answer(status, message)
  return { status = status, message = message }
end

-- A field as text: "" unless it is a string or a number.
local function text(value)
  if type(value) == "string" then
    return value
  end
  if type(value) == "number" then
    return tostring(value)
  end
  return ""
end

-- A field as a number, or nil.
local function number(value)
  if type(value) == "number" then
    return value
  end
  if type(value) == "string" then
    return tonumber(value)
  end
  return nil
end

-- "Reason: message", or whichever of the two is there.
local function explain(condition)
  local reason = text(condition.reason)
  local message = text(condition.message)
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  if reason ~= "" then
    return reason
  end
  return text(condition.type) .. " is " .. text(condition.status)
end

local function assess(resource)
  if type(resource) ~= "table" then
    return answer("Unknown", "the object is not a map")
  end
  local generation = nil
  if type(resource.metadata) == "table" then
    generation = number(resource.metadata.generation)
  end

  local status = resource.status
  if type(status) ~= "table" or next(status) == nil then
    return answer("Progressing", WAITING .. " to report a status")
  end
  local observed = number(status.observedGeneration)
  if generation ~= nil and observed ~= nil and observed < generation then
    return answer("Progressing", WAITING .. " to observe generation " .. tostring(generation)
      .. " (the status describes generation " .. tostring(observed) .. ")")
  end

  -- The first condition of each type. A map or a string here was not written by the controller.
  local conditions = {}
  local list = status.conditions
  if list ~= nil then
    if type(list) ~= "table" then
      return answer("Unknown", "status.conditions is not a list of conditions")
    end
    for key in pairs(list) do
      if type(key) ~= "number" then
        return answer("Unknown", "status.conditions is not a list of conditions")
      end
    end
    for _, condition in ipairs(list) do
      if type(condition) == "table" and type(condition.type) == "string"
        and conditions[condition.type] == nil then
        conditions[condition.type] = condition
      end
    end
  end

  -- A condition computed for an older generation says nothing about the current spec: a stale
  -- False is not a failure yet, a stale True not a success.
  if generation ~= nil then
    for _, kind in ipairs({ "Accepted", "ResolvedRefs", "Programmed", "Ready" }) do
      local condition = conditions[kind]
      local seen = condition and number(condition.observedGeneration)
      if seen ~= nil and seen < generation then
        return answer("Progressing", WAITING .. ": " .. kind .. " describes generation "
          .. tostring(seen) .. ", the object is at generation " .. tostring(generation))
      end
    end
  end

  for _, kind in ipairs({ "Accepted", "ResolvedRefs" }) do
    local condition = conditions[kind]
    if condition and condition.status == "False" then
      return answer("Degraded", explain(condition))
    end
  end

  local programmed = conditions.Programmed
  if programmed and programmed.status ~= "True" and programmed.reason ~= "NotProgrammed" then
    return answer("Progressing", explain(programmed))
  end

  local ready = conditions.Ready
  if ready and ready.status == "True" then
    local message = text(ready.message)
    if message == "" then
      message = "Ready"
    end
    return answer("Healthy", message)
  end
  if ready and ready.status == "False" then
    if ready.reason == "Pending" or ready.reason == "NoDataplanes" then
      return answer("Progressing", explain(ready))
    end
    return answer("Degraded", explain(ready))
  end
  return answer("Progressing", WAITING .. " to report Ready")
end

return assess(obj)
