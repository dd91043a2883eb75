// Package config defines, reads and checks the one YAML file shared by the
// source-pg, query-engine and reactor binaries.
//
// It owns: the schema (the Config struct tree; every key is documented on its
// field together with its default), ${VAR} / ${VAR:-default} expansion, the
// strict decoding that rejects unknown keys, the defaults (ApplyDefaults, the
// only place they are set), and Validate, which reports every problem at once
// with the key's path and, when the config came from YAML, its line:column.
//
// Reading a file: Load(path) or Parse(data, lookupEnv). Both expand
// variables, decode, apply defaults and validate; any failure is a
// *ValidationError listing every problem.
//
// Each binary reads the same file and uses its own part. A file may hold only
// one part, so cross-references (a query naming a source id, a reaction naming
// a query id) are checked only when the referenced section is non-empty.
//
// Kind-specific keys (sources[].kind, reactions[].kind) live in one struct per
// kind selected through a registry (see sourceKinds and reactionKinds); adding
// a kind is one struct with its defaults and checks plus one registration.
//
// It must never: put a secret (passwords, tokens, connection strings, HTTP
// header values) in an error message or in String() output; read the
// environment except through the lookup function it is given (Load, and
// Parse given nil, use os.LookupEnv); touch the network, the file system beyond reading the config
// file, or the global logger.
package config
