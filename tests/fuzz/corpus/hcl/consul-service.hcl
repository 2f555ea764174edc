# A service file the way Consul's documentation writes one.
service {
  name = "web"
  id   = "web-1"
  tags = ["v1", "primary"]
  port = 8080
  meta = {
    version = "1.2.3"
  }
  enable_tag_override = false
  weights {
    passing = 10
    warning = 1
  }
  check {
    id       = "web-http"
    name     = "HTTP on 8080"
    http     = "http://localhost:8080/health"
    method   = "GET"
    interval = "10s"
    timeout  = "1s"
  }
  check {
    id  = "web-ttl"
    ttl = "30s"   // fed by the sidecar's probe
    probe = { tcp = "127.0.0.1:8080", interval = "5s" }
  }
}

service {
  name = "api"
  port = 9000
  checks = [
    {
      id = "api-tcp"
      tcp = "localhost:9000"
      interval = "10s"
    },
  ]
}
/* the sidecar's own settings, in HCL too */
consul {
  address = "127.0.0.1:8500"
}
node = "gw-1"
