// Package packaging holds no Go code: it is the directory of the deb and
// rpm description (nfpm.yaml), the systemd unit, the maintainer scripts,
// install.sh for `make install`, and the tests that build the packages and
// install the deb on the machine running them (see README.md).
package packaging
