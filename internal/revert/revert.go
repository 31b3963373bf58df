// Package revert holds an undo stack for one transaction: every step that
// changed the host pushes the function that takes the change back, and a
// failed transaction runs them in reverse order.
package revert

import "errors"

// Reverter is an undo stack. The zero value is ready to use. It is not safe
// for concurrent use.
type Reverter struct {
	undo []func() error
}

// Add pushes an undo step; steps run last-in first-out.
func (r *Reverter) Add(f func() error) {
	r.undo = append(r.undo, f)
}

// Len reports how many undo steps are pending.
func (r *Reverter) Len() int { return len(r.undo) }

// Fail runs every pending undo step, newest first, and empties the stack. It
// keeps going when a step fails and returns all their errors joined.
func (r *Reverter) Fail() error {
	var errs []error
	for i := len(r.undo) - 1; i >= 0; i-- {
		if err := r.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	r.undo = nil
	return errors.Join(errs...)
}

// Success forgets the pending undo steps: the transaction is committed.
func (r *Reverter) Success() {
	r.undo = nil
}
