/**
 * Create a tap service, tap flow or tap mirror, and delete one after a
 * confirmation, in modal dialogs. Forms check what the API would refuse with
 * the API's own rules and words (validate.ts); whatever the API still refuses
 * comes back with its message, shown as is.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

import { ApiError, type Api } from './api.js';
import { nameOf } from './format.js';
import type { Inventory, Kind } from './types.js';
import { KIND_LABEL } from './types.js';
import { checkTapFlow, checkTapMirror, checkTapService, type Checked } from './validate.js';

function Modal({ title, onClose, children, name }: { title: string; onClose: () => void; children: ComponentChildren; name: string }) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const element = dialog.current!;
    if (!element.open) element.showModal();
    const cancel = (event: Event) => {
      event.preventDefault();
      onClose();
    };
    element.addEventListener('cancel', cancel);
    return () => element.removeEventListener('cancel', cancel);
  }, []);
  return (
    <dialog ref={dialog} class="modal" aria-label={title} data-dialog={name}>
      <h2>{title}</h2>
      {children}
    </dialog>
  );
}

function useSubmit(api: Api, kind: Kind, onDone: (key: string) => void) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (checked: Checked) => {
    if (checked.error !== undefined) {
      setError(checked.error);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const created = await api.create(kind, checked.body);
      onDone(`${kind}:${created[kind]!.id}`);
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, submit };
}

const text = (set: (value: string) => void) => (event: Event) => set((event.currentTarget as HTMLInputElement).value);

function Common({ name, setName, description, setDescription }: { name: string; setName: (v: string) => void; description: string; setDescription: (v: string) => void }) {
  return (
    <>
      <label>Name<input name="name" value={name} onInput={text(setName)} autocomplete="off" /></label>
      <label>Description<input name="description" value={description} onInput={text(setDescription)} autocomplete="off" /></label>
    </>
  );
}

function PortSelect({ label, name, value, set, inventory }: { label: string; name: string; value: string; set: (v: string) => void; inventory: Inventory }) {
  return (
    <label>{label}
      <select name={name} value={value} onChange={text(set)}>
        <option value="">— choose a port —</option>
        {inventory.ports.map((port) => (
          <option value={port.id}>{nameOf(port)} ({port['binding:profile'].interface}{port['binding:profile'].netns ? ` @ ${port['binding:profile'].netns}` : ''}, {port['binding:host_id']})</option>
        ))}
      </select>
    </label>
  );
}

function Footer({ error, busy, onClose, submitText }: { error: string | null; busy: boolean; onClose: () => void; submitText: string }) {
  return (
    <>
      {error && <p class="form-error" role="alert" data-testid="form-error">{error}</p>}
      <div class="buttons">
        <button type="button" onClick={onClose}>Cancel</button>
        <button type="submit" class="primary" disabled={busy} data-action="submit">{busy ? 'Creating…' : submitText}</button>
      </div>
    </>
  );
}

export function CreateForm({ kind, api, inventory, onClose, onCreated }: {
  kind: Exclude<Kind, 'port'>;
  api: Api;
  inventory: Inventory;
  onClose: () => void;
  onCreated: (key: string) => void;
}) {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [port, setPort] = useState('');
  const [service, setService] = useState('');
  const [direction, setDirection] = useState('BOTH');
  const [vlanFilter, setVlanFilter] = useState('');
  const [mirrorType, setMirrorType] = useState('erspanv1');
  const [remoteIp, setRemoteIp] = useState('');
  const [inId, setInId] = useState('');
  const [outId, setOutId] = useState('');
  const [bothId, setBothId] = useState('');
  const [udpPort, setUdpPort] = useState('');
  const { error, busy, submit } = useSubmit(api, kind, onCreated);

  const onSubmit = (event: Event) => {
    event.preventDefault();
    const common = { name, description };
    void submit(kind === 'tap_service' ? checkTapService({ ...common, port_id: port })
      : kind === 'tap_flow' ? checkTapFlow({ ...common, source_port: port, tap_service_id: service, direction, vlan_filter: vlanFilter })
        : checkTapMirror({
          ...common, port_id: port, mirror_type: mirrorType, remote_ip: remoteIp, in_id: inId, out_id: outId, both_id: bothId,
          udp_port: mirrorType === 'vxlan' ? udpPort : '',
        }));
  };

  return (
    <Modal title={`New ${KIND_LABEL[kind]}`} onClose={onClose} name={`create-${kind}`}>
      <form onSubmit={onSubmit} noValidate>
        <Common name={name} setName={setName} description={description} setDescription={setDescription} />
        {kind === 'tap_service' && <PortSelect label="Port that receives the copies (the monitor's)" name="port_id" value={port} set={setPort} inventory={inventory} />}
        {kind === 'tap_flow' && (
          <>
            <PortSelect label="Source port (whose traffic is mirrored)" name="source_port" value={port} set={setPort} inventory={inventory} />
            <label>Tap service
              <select name="tap_service_id" value={service} onChange={text(setService)}>
                <option value="">— choose a tap service —</option>
                {inventory.tap_services.map((item) => <option value={item.id}>{nameOf(item)}</option>)}
              </select>
            </label>
            <label>Direction (the workload's)
              <select name="direction" value={direction} onChange={text(setDirection)}>
                <option value="IN">IN: traffic into the workload</option>
                <option value="OUT">OUT: traffic from the workload</option>
                <option value="BOTH">BOTH</option>
              </select>
            </label>
            <label>VLAN filter (optional)<input name="vlan_filter" value={vlanFilter} onInput={text(setVlanFilter)} placeholder="e.g. 1-5,9,18-27" autocomplete="off" /></label>
          </>
        )}
        {kind === 'tap_mirror' && (
          <>
            <PortSelect label="Port whose traffic is mirrored" name="port_id" value={port} set={setPort} inventory={inventory} />
            <label>Remote IP (the collector)<input name="remote_ip" value={remoteIp} onInput={text(setRemoteIp)} placeholder="192.0.2.10 or 2001:db8::10" autocomplete="off" /></label>
            <label>Tunnel
              <select name="mirror_type" value={mirrorType} onChange={text(setMirrorType)}>
                <option value="erspanv1">ERSPAN type II (session id 0–1023)</option>
                <option value="gre">GRE (32-bit key)</option>
                <option value="erspanv2">ERSPAN type III (session id 0–1023, direction bit)</option>
                <option value="vxlan">VXLAN (24-bit VNI, UDP)</option>
              </select>
            </label>
            <div class="pair">
              <label>IN tunnel id<input name="directions.IN" value={inId} onInput={text(setInId)} inputMode="numeric" autocomplete="off" /></label>
              <label>OUT tunnel id<input name="directions.OUT" value={outId} onInput={text(setOutId)} inputMode="numeric" autocomplete="off" /></label>
            </div>
            <label>or BOTH directions in one tunnel: its id<input name="directions.BOTH" value={bothId} onInput={text(setBothId)} inputMode="numeric" autocomplete="off" /></label>
            {mirrorType === 'vxlan' && (
              <label>UDP port (default 4789)<input name="udp_port" value={udpPort} onInput={text(setUdpPort)} inputMode="numeric" autocomplete="off" placeholder="4789" /></label>
            )}
          </>
        )}
        <Footer error={error} busy={busy} onClose={onClose} submitText={`Create ${KIND_LABEL[kind]}`} />
      </form>
    </Modal>
  );
}

export function ConfirmDelete({ kind, id, name, api, inventory, onClose, onDeleted }: {
  kind: Kind;
  id: string;
  name: string;
  api: Api;
  inventory: Inventory;
  onClose: () => void;
  onDeleted: () => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const flows = kind === 'tap_service' ? inventory.tap_flows.filter((flow) => flow.tap_service_id === id) : [];
  const confirm = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.delete(kind, id);
      onDeleted();
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : String(failure));
      setBusy(false);
    }
  };
  return (
    <Modal title={`Delete ${KIND_LABEL[kind]}?`} onClose={onClose} name="confirm-delete">
      <form onSubmit={confirm}>
        <p>Delete the {KIND_LABEL[kind]} <strong class="quoted">{name}</strong>? Mirroring it stops at once.</p>
        {flows.length > 0 && <p class="warning">Its {flows.length} tap flow{flows.length === 1 ? '' : 's'} will be deleted too: {flows.map((flow) => nameOf(flow)).join(', ')}.</p>}
        {error && <p class="form-error" role="alert" data-testid="form-error">{error}</p>}
        <div class="buttons">
          <button type="button" onClick={onClose}>Cancel</button>
          <button type="submit" class="danger" disabled={busy} data-action="confirm-delete">{busy ? 'Deleting…' : 'Delete'}</button>
        </div>
      </form>
    </Modal>
  );
}
