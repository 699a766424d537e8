package mailauth

// Bcrypts is how many password hashes k compared.
func (k *Checker) Bcrypts() int64 { return k.bcrypts.Load() }
