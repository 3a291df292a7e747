{#-
  warren.sls: converge the Warren kernel on a minion to a manifest with `warren apply`.

  `salt MINION state.apply warren` runs `warren apply --detailed-exitcodes MANIFEST`;
  `salt MINION state.apply warren test=True` runs `warren apply --check --detailed-exitcodes
  MANIFEST` instead, which changes nothing. Both go through `warren-salt-apply`, run by
  `cmd.script` straight from the file roots (nothing is installed on the minion, so a dry run
  on a fresh minion works), which turns
  warren's exit code into Salt's `stateful` protocol (the table is in that script), so the state
  reports "changed" only when an environment was created, replaced or stopped, and fails when
  warren fails. A second run with the same manifest reports no changes.

  Needs the Warren kernel running on the minion (`contrib/systemd/warren.service`).

  Pillar, every key optional:

    warren:
      manifest: /etc/warren/spaces.toml          # the manifest on the minion
      manifest_source: salt://warren/spaces.toml # when set, Salt also installs the manifest
      binary: /usr/local/bin/warren              # the warren executable

  Put this file and `warren-salt-apply` in a `warren` directory of the file roots
  (`/srv/salt/warren/init.sls` and `/srv/salt/warren/warren-salt-apply`).
-#}
{%- set cfg = salt['pillar.get']('warren', {}) %}
{%- set manifest = cfg.get('manifest', '/etc/warren/spaces.toml') %}
{%- set source = cfg.get('manifest_source') %}
{%- set binary = cfg.get('binary', '/usr/local/bin/warren') %}
{#- The helper is not installed on the minion: `cmd.script` fetches it from the master's file
    roots into the minion's cache and runs it, the same under test=True as in a real run. An
    earlier version installed it with `file.managed` and ran the installed copy, so a dry run on
    a fresh minion (where test=True installs nothing) failed with rc 127. #}
{%- set helper = 'warren-salt-apply' %}
{%- if source %}

warren-manifest:
  file.managed:
    - name: {{ manifest }}
    - source: {{ source }}
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
{%- endif %}

warren-apply:
  cmd.script:
    - source: salt://warren/warren-salt-apply
    - name: {{ helper }} apply {{ manifest }}
    - shell: /bin/sh
    - env:
      - WARREN: {{ binary }}
    # Under test=True Salt runs the script with these arguments instead.
    - stateful:
      - test_name: {{ helper }} check {{ manifest }}
{%- if source %}
    - require:
      - file: warren-manifest
{%- endif %}
