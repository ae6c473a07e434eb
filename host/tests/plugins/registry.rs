//! The plugin directory: loading, hot reload, the compile cache, pins and options files.
