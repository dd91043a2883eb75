package cypher

// Walk calls fn for e and, while fn returns true, for its subexpressions in
// depth-first order (children left to right). Arguments of aggregate calls
// are visited like any other argument; KeyRef visits nothing below it.
func Walk(e Expr, fn func(Expr) bool) {
	if e == nil || !fn(e) {
		return
	}
	switch x := e.(type) {
	case *Property:
		Walk(x.X, fn)
	case *Index:
		Walk(x.X, fn)
		Walk(x.Index, fn)
	case *Slice:
		Walk(x.X, fn)
		Walk(x.From, fn)
		Walk(x.To, fn)
	case *Unary:
		Walk(x.X, fn)
	case *Binary:
		Walk(x.L, fn)
		Walk(x.R, fn)
	case *IsNull:
		Walk(x.X, fn)
	case *HasLabels:
		Walk(x.X, fn)
	case *ListLit:
		for _, el := range x.Elems {
			Walk(el, fn)
		}
	case *MapLit:
		for _, v := range x.Values {
			Walk(v, fn)
		}
	case *Case:
		Walk(x.Subject, fn)
		for i := range x.Whens {
			Walk(x.Whens[i], fn)
			Walk(x.Thens[i], fn)
		}
		Walk(x.Else, fn)
	case *Comprehension:
		Walk(x.Var, fn)
		Walk(x.List, fn)
		Walk(x.Where, fn)
		Walk(x.Project, fn)
	case *Quantifier:
		Walk(x.Var, fn)
		Walk(x.List, fn)
		Walk(x.Where, fn)
	case *Call:
		for _, a := range x.Args {
			Walk(a, fn)
		}
	}
}

// readsRow reports whether e reads a row variable.
func readsRow(e Expr) bool {
	found := false
	Walk(e, func(x Expr) bool {
		if v, ok := x.(*Variable); ok && v.Scope == ScopeRow {
			found = true
		}
		return !found
	})
	return found
}

func propsReadRow(props []PropertyPredicate) bool {
	for _, p := range props {
		if readsRow(p.Value) {
			return true
		}
	}
	return false
}

// Accepts reports whether el may bind this node slot as far as the element
// alone decides: it is a node and has the slot's labels. Property
// predicates are checked by PropsHold.
func (n *NodeSlot) Accepts(el Element) bool {
	return el != nil && !el.IsRelation() && MatchesLabels(el, n.Labels)
}

// PropsHold evaluates the slot's property predicates for el: each property
// must equal (Cypher =) its expression's value. When PropsReadRow is true
// the expressions read other row slots, which env.Row must hold.
func (n *NodeSlot) PropsHold(el Element, env *Env) (bool, error) {
	return propsHold(el, n.Props, env)
}

// Accepts reports whether el may bind this relation slot as far as the
// element alone decides: it is a relation of one of the slot's types (any
// type when Types is empty).
func (r *RelSlot) Accepts(el Element) bool {
	if el == nil || !el.IsRelation() {
		return false
	}
	if len(r.Types) == 0 {
		return true
	}
	ls := el.Labels()
	if len(ls) == 0 {
		return false
	}
	for _, t := range r.Types {
		if t == ls[0] {
			return true
		}
	}
	return false
}

// PropsHold is NodeSlot.PropsHold for a relation slot.
func (r *RelSlot) PropsHold(el Element, env *Env) (bool, error) {
	return propsHold(el, r.Props, env)
}

func propsHold(el Element, props []PropertyPredicate, env *Env) (bool, error) {
	for _, p := range props {
		want, err := Eval(p.Value, env)
		if err != nil {
			return false, err
		}
		have, _ := el.Property(p.Key)
		if eq, isNull := Equal(have, want); !eq || isNull {
			return false, nil
		}
	}
	return true, nil
}
