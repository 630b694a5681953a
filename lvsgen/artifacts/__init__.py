"""One module per kind of file a host gets, each rendering lvsgen.state's HostState:
ipvsadm (the rules file), nftables (the forwarding policy), sysctl (sysctl.d), modules
(modules-load.d), networkd (systemd-networkd), setup (setup.sh, the engine, the boot units)
and cloud_init (the user-data)."""
