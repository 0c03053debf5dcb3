package v1alpha1

// Condition types.
const (
	// ConditionReady summarises an object: True when the controller has
	// applied everything the spec asks for.
	ConditionReady = "Ready"
	// ConditionAgentHeartbeat (NodeQoSReport) is True while the agent's
	// tier-load is fresh, False when it is stale or missing.
	ConditionAgentHeartbeat = "AgentHeartbeat"
	// ConditionAnnotationsValid (NodeQoSReport) is False when the node's
	// agent annotations cannot be parsed; the message names the key.
	ConditionAnnotationsValid = "AnnotationsValid"
	// ConditionEnforcing (NodeQoSReport) is True when the agent reports that
	// it enforces tiers (scx_layered or cgroup backend).
	ConditionEnforcing = "Enforcing"
	// ConditionAgentSilent (NodeQoSReport) is True when the agent that used
	// to report on the node has been silent for longer than the manager's
	// silent-agent threshold (the backstop acted: an event, and optionally a
	// taint). Nodes whose agent never reported are not silent.
	ConditionAgentSilent = "AgentSilent"
	// ConditionProfileConflict (OvercommitProfile) is True when another,
	// older profile selects some of the same namespaces and wins them.
	ConditionProfileConflict = "ProfileConflict"
	// ConditionPriorityMappingConflict (InferaPolicy) is True when some node
	// the policy selects gets a different priority mapping: that of an older
	// policy, or one an operator set by hand.
	ConditionPriorityMappingConflict = "PriorityMappingConflict"
)

// Condition reasons.
const (
	ReasonReconciled         = "Reconciled"
	ReasonReconcileFailed    = "ReconcileFailed"
	ReasonInvalidSelector    = "InvalidSelector"
	ReasonHeartbeatFresh     = "HeartbeatFresh"
	ReasonHeartbeatStale     = "HeartbeatStale"
	ReasonHeartbeatMissing   = "HeartbeatMissing"
	ReasonAnnotationsParsed  = "AnnotationsParsed"
	ReasonMalformedTierLoad  = "MalformedTierLoad"
	ReasonMalformedStatus    = "MalformedAgentStatus"
	ReasonAgentEnforcing     = "AgentEnforcing"
	ReasonAgentNotEnforcing  = "AgentNotEnforcing"
	ReasonAgentSilent        = "AgentSilent"
	ReasonAgentReporting     = "AgentReporting"
	ReasonAgentNeverReported = "AgentNeverReported"
	ReasonNoConflict         = "NoConflict"
	ReasonNamespaceClaimed   = "NamespaceClaimedByOtherProfile"
	ReasonMappingOverridden  = "MappingOverridden"
	ReasonInvalidMapping     = "InvalidPriorityMapping"
	ReasonDeleting           = "Deleting"
)
