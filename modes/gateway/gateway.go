// Package gateway runs gateway mode: mailgate as the MTA in front of an
// organisation's mail server, relaying mail for its protected domains to
// their servers and authenticated users' mail out. It is the mail
// transfer core (modes/mta) with nothing in front of delivery.
package gateway

import "mailgate/modes/mta"

// Start starts gateway mode.
func Start(o mta.Options) (*mta.MTA, error) {
	o.Mode = "gateway"
	o.Deliverer, o.CheckRecipient, o.Auth = nil, nil, nil
	return mta.Start(o)
}
