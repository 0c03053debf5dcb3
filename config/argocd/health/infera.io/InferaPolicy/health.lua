-- Argo CD health check for infera.io/v1alpha1 InferaPolicy (Temper).
-- The three kinds share this script (a test checks the copies agree);
-- config/argocd/argocd-cm.yaml is generated from these files by
-- `go run ./hack/argocd-cm` (make manifests).
--
--   no status yet, or status.observedGeneration below metadata.generation,
--   or no Ready condition for this generation      -> Progressing
--   Ready=True                                     -> Healthy
--   Ready=False                                    -> Degraded
--   Ready=Unknown                                  -> Progressing
local hs = {}
local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for infera-manager to report status"
  return hs
end
local observed = obj.status.observedGeneration or 0
if observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for infera-manager to observe generation " .. generation .. " (status is of generation " .. observed .. ")"
  return hs
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      local msg = c.message or ""
      if c.reason ~= nil and c.reason ~= "" then
        msg = c.reason .. ": " .. msg
      end
      if c.observedGeneration ~= nil and c.observedGeneration < generation then
        hs.status = "Progressing"
        hs.message = "Ready condition is of generation " .. c.observedGeneration .. ", waiting for " .. generation
      elseif c.status == "True" then
        hs.status = "Healthy"
        hs.message = msg
      elseif c.status == "False" then
        hs.status = "Degraded"
        hs.message = msg
      else
        hs.status = "Progressing"
        hs.message = msg
      end
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
