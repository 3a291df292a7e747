{#-
  warren.sls: converge the Warren kernel on a minion to a manifest with `warren apply`.

  `salt MINION state.apply warren` runs `warren apply --detailed-exitcodes MANIFEST`;
  `salt MINION state.apply warren test=True` runs `warren apply --check --detailed-exitcodes
  MANIFEST` instead, which changes nothing. Both go through `warren-salt-apply`, which turns
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
{%- set helper = '/usr/local/libexec/warren/warren-salt-apply' %}

warren-salt-apply:
  file.managed:
    - name: {{ helper }}
    - source: salt://warren/warren-salt-apply
    - makedirs: True
    - user: root
    - group: root
    - mode: '0755'

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
  cmd.run:
    - name: {{ helper }} apply {{ manifest }}
    - env:
      - WARREN: {{ binary }}
    # Under test=True Salt runs this command instead of `name`.
    - stateful:
      - test_name: {{ helper }} check {{ manifest }}
    - require:
      - file: warren-salt-apply
{%- if source %}
      - file: warren-manifest
{%- endif %}
