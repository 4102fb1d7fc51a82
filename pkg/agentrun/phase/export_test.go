package phase

// The lifecycle every backend goes through (lifecycle_test.go), for the
// tests of package phase_test: cached_test.go decides it on the objects as
// the run cache keeps them (runcache, which imports phase).

// LifecycleStep is one step of one backend's lifecycle.
type LifecycleStep struct {
	// Name is "<backend>/<step>".
	Name string
	// In builds the step's input.
	In func() Observed
}

// LifecycleSteps are the steps of every backend's lifecycle.
func LifecycleSteps() []LifecycleStep {
	var out []LifecycleStep
	for _, k := range kits {
		for _, step := range lifecycle {
			out = append(out, LifecycleStep{Name: string(k.backend) + "/" + step.name, In: func() Observed { return stepInput(k, step.in) }})
		}
	}
	return out
}

// Applied is the input of the pass after in decided d.
var Applied = applied
