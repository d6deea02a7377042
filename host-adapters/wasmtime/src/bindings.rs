//! Host bindings generated from the WIT package: the only place that runs `bindgen!` on
//! the host side.

#![expect(missing_docs, reason = "generated code: the WIT files document every item, bindgen keeps only some docs")]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});
