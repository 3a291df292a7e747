# @summary Converge the Warren kernel on this node to a manifest with `warren apply`.
#
# The exec runs `warren apply --detailed-exitcodes MANIFEST` unless `warren diff MANIFEST`
# exits 0 (nothing would change), so Puppet reports a change only when an environment is
# created, replaced or stopped, and an unchanged manifest is a no-op. `--detailed-exitcodes`
# uses Puppet's own convention: 0 no change, 2 changed, 4 failed, 6 changed and failed;
# `returns => [0, 2]` accepts the first two and fails the resource on 4 and 6. Under
# `puppet agent --noop` the `unless` check still runs and the exec is reported as a pending
# change when `warren diff` finds differences; nothing is applied.
#
# Needs the Warren kernel running on the node (contrib/systemd/warren.service).
#
# @param manifest
#   The manifest on the node. Relative `image` paths in it resolve against its directory.
# @param source
#   When set, Puppet also installs the manifest from this source (e.g.
#   'puppet:///modules/warren/spaces.toml') and applies it whenever it changes.
# @param warren
#   The warren executable.
# @param stop_timeout
#   Seconds a replaced or removed environment gets between SIGTERM and the forced stop.
#
# @example
#   class { 'warren':
#     source => 'puppet:///modules/profile/warren/spaces.toml',
#   }
class warren (
  Stdlib::Absolutepath $manifest     = '/etc/warren/spaces.toml',
  Optional[String]     $source       = undef,
  Stdlib::Absolutepath $warren       = '/usr/local/bin/warren',
  Integer[0]           $stop_timeout = 10,
) {
  if $source {
    file { $manifest:
      ensure => file,
      source => $source,
      owner  => 'root',
      group  => 'root',
      mode   => '0644',
      before => Exec['warren apply'],
    }
  }

  exec { 'warren apply':
    command   => "${warren} apply --detailed-exitcodes --timeout ${stop_timeout} ${manifest}",
    unless    => "${warren} diff ${manifest}",
    returns   => [0, 2],
    # `apply` waits for replaced environments to stop: allow for the stop timeout of each.
    timeout   => 600,
    logoutput => true,
  }
}
