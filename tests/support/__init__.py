"""What tests share: fakes of the services and phones vitbench talks to, the daemons they
start on loopback, data and artifact fixtures, and small assertion helpers. Test modules
import from here, never from each other."""
