package reaction

// DropClients disconnects every connected client (they reconnect and
// start again from a snapshot), as a network cut would.
func (s *SSE) DropClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.subs)
	for c := range s.subs {
		delete(s.subs, c)
		c.drop()
	}
	return n
}
