# ipvs-proc-print.awk: /proc/net/ip_vs printed in ipvsadm -S -n form, in one pass, with the
# functions of ipvs-proc.awk (in the engine: LVS_AWK_IPVS_PROC_PRINT). lvs_ipvs_proc (ipvs.sh):
#   awk -v hz=HZ -v counts=0|1 -f ipvs-proc.awk -f ipvs-proc-print.awk /proc/net/ip_vs
# Exit status 3: a persistent service and no hz; 2: an unknown protocol; 4: the lines are all
# printed, but one is a firewall-mark service, which must be read with ipvsadm -S -n.
{ line = proc_line(counts); if (proc_err) exit proc_err; if (line != "") print line }
END { if (proc_err) exit proc_err; if (fwm) exit 4 }
