package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// flagErrHelp is flag.ErrHelp, named for commands that parse by hand.
var flagErrHelp = flag.ErrHelp

// newFlagSet returns a flag set that reports errors instead of exiting, with
// a usage text that starts with what the command does.
func newFlagSet(name string, e *env, doc string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: esignflow %s [flags]\n\n%s\n\nflags:\n", name, doc)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; a bad flag is a usage error naming it (main adds
// one line pointing to --help), --help prints the full usage and is not an
// error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseQuiet(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// parseQuiet is fs.Parse without the flag package's own printing: on a bad
// flag it prints the error and the whole usage, which would bury the
// error; here the error is returned (wrapping errUsage) for main to print
// once, and the usage is printed only for --help (flag.ErrHelp).
func parseQuiet(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	default:
		return fmt.Errorf("%w: %w", errUsage, err)
	}
}

// flagRegistrar is the part of *flag.FlagSet that registers flags, so a
// component's flags can be shared between its own command and dev.
type flagRegistrar interface {
	StringVar(p *string, name, value, usage string)
	IntVar(p *int, name string, value int, usage string)
	Int64Var(p *int64, name string, value int64, usage string)
	Float64Var(p *float64, name string, value float64, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
}

// intFlag is a parsed integer flag, for atLeastOne.
type intFlag struct {
	name  string
	value int
}

// atLeastOne returns a usage error naming the first of flags whose value
// is below 1.
func atLeastOne(flags ...intFlag) error {
	for _, f := range flags {
		if f.value < 1 {
			return fmt.Errorf("%w: --%s must be at least 1, got %d", errUsage, f.name, f.value)
		}
	}
	return nil
}
