module pgjobs.dev/pause

go 1.26.0
