package publish

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// fieldManager names the agent in the Node's managed fields.
const fieldManager = "infera-agent"

var metav1PatchOptions = metav1.PatchOptions{FieldManager: fieldManager}
