package pop3d

import "time"

func init() { authFailDelay = 10 * time.Millisecond }
