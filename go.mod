module github.com/drover-pool/drover

go 1.26.8

require (
	github.com/fsnotify/fsnotify v1.9.0
	github.com/pelletier/go-toml/v2 v2.2.4
	golang.org/x/sys v0.38.0
)

require go.uber.org/goleak v1.3.0 // indirect
