// Package cert is in charge of the appliance's certificate machinery:
//
//   - the per-device identity (a device CA and the "Factory" server
//     certificate it signs, plus the device key), generated once on first
//     boot and kept for the life of the device;
//   - issuing further server certificates from the device CA;
//   - sealing private keys under the device key before they are written to
//     the configuration, and opening them again;
//   - parsing certificates and keys that an administrator pastes (PEM) or
//     uploads (PKCS#12), and describing certificates for display;
//   - choosing which certificate to present for a TLS server name (SNI),
//     through an immutable Store that is swapped atomically in a Holder on
//     every configuration change.
package cert
