// Command floor is the benchmarks' exec floor: a Go program that does
// nothing and exits 0. Its start-up and exit is the least any hook written
// in Go can cost libvirtd, so the hook's time is reported as a multiple of
// it (bench/cmd/vbbench).
package main

func main() {}
