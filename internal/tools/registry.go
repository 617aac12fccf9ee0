// Package tools is the registry: the one list of owl's tools. The command
// line, `owl tools`, tests and the agent start tools from it.
package tools

import (
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/bashfunc"
	"github.com/owlbpf/owl/internal/tools/bashreadline"
	"github.com/owlbpf/owl/internal/tools/capable"
	"github.com/owlbpf/owl/internal/tools/eperm"
	"github.com/owlbpf/owl/internal/tools/execsnoop"
	"github.com/owlbpf/owl/internal/tools/funccount"
	"github.com/owlbpf/owl/internal/tools/funclatency"
	"github.com/owlbpf/owl/internal/tools/modsnoop"
	"github.com/owlbpf/owl/internal/tools/opensnoop"
	"github.com/owlbpf/owl/internal/tools/pamsnoop"
	"github.com/owlbpf/owl/internal/tools/profile"
	"github.com/owlbpf/owl/internal/tools/seccount"
	"github.com/owlbpf/owl/internal/tools/setuids"
	"github.com/owlbpf/owl/internal/tools/stackcount"
	"github.com/owlbpf/owl/internal/tools/tcpaccept"
	"github.com/owlbpf/owl/internal/tools/tcpconnect"
	"github.com/owlbpf/owl/internal/tools/tcpreset"
	"github.com/owlbpf/owl/internal/tools/trace"
	"github.com/owlbpf/owl/internal/tools/ucalls"
	"github.com/owlbpf/owl/internal/tools/uflow"
	"github.com/owlbpf/owl/internal/tools/ugc"
	"github.com/owlbpf/owl/internal/tools/usdt"
	"github.com/owlbpf/owl/internal/tools/uthreads"
)

// All lists every tool; adding a tool is one line here.
func All() []tool.Tool {
	return []tool.Tool{
		tcpconnect.Tool,
		tcpaccept.Tool,
		tcpreset.Tool,
		setuids.Tool,
		eperm.Tool,
		capable.Tool,
		funccount.Tool,
		funclatency.Tool,
		trace.Tool,
		stackcount.Tool, profile.Tool,
		usdt.Tool,
		seccount.Tool,
		modsnoop.Tool,
		execsnoop.Tool,
		opensnoop.Tool,
		pamsnoop.Tool,
		bashreadline.Tool,
		bashfunc.Tool, bashfunc.LatTool,
		ucalls.Tool,
		uflow.Tool,
		ugc.Tool,
		uthreads.Tool,
	}
}

// Find returns the tool called name, or nil.
func Find(name string) tool.Tool {
	for _, t := range All() {
		if t.Info().Name == name {
			return t
		}
	}
	return nil
}
