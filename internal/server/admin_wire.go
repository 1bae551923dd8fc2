package server

import (
	"context"

	"github.com/drover-pool/drover/internal/gateway"
)

// adminParts holds the admin listener, the metrics and the console.
type adminParts struct{}

// newObserver returns the metrics' request observer, or nil.
func (s *Server) newObserver() gateway.Observer { return nil }

// startAdmin opens the admin listener when server.admin is set.
func (s *Server) startAdmin() error { return nil }

// stopAdmin closes the admin listener.
func (s *Server) stopAdmin(ctx context.Context) {}
