{{- /* z2jh's egressAllowRules defaults for the hub and the proxy: DNS, the
Internet, the private ranges and the cloud metadata server. */}}
{{- define "z2jh-double.egressAllowRules" -}}
- ports: [{ port: 53, protocol: UDP }, { port: 53, protocol: TCP }]
  to:
    - ipBlock: { cidr: 169.254.169.254/32 }
    - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: kube-system } }
    - ipBlock: { cidr: 10.0.0.0/8 }
    - ipBlock: { cidr: 172.16.0.0/12 }
    - ipBlock: { cidr: 192.168.0.0/16 }
- to:
    - ipBlock: { cidr: 0.0.0.0/0, except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.169.254/32] }
- to:
    - ipBlock: { cidr: 10.0.0.0/8 }
    - ipBlock: { cidr: 172.16.0.0/12 }
    - ipBlock: { cidr: 192.168.0.0/16 }
- to:
    - ipBlock: { cidr: 169.254.169.254/32 }
{{- end -}}
