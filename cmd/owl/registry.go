package main

import (
	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/tools/capable"
	"github.com/owlbpf/owl/internal/tools/eperm"
	"github.com/owlbpf/owl/internal/tools/setuids"
	"github.com/owlbpf/owl/internal/tools/tcpaccept"
	"github.com/owlbpf/owl/internal/tools/tcpconnect"
	"github.com/owlbpf/owl/internal/tools/tcpreset"
)

// registry lists every tool; adding a tool is one line here.
var registry = []cli.Tool{
	tcpconnect.Tool,
	tcpaccept.Tool,
	tcpreset.Tool,
	setuids.Tool,
	eperm.Tool,
	capable.Tool,
}
