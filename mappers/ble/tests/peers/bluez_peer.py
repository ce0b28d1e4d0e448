#!/usr/bin/python3
"""BlueZ's D-Bus API with GATT, for the BLE mapper's tests: python-dbusmock's `bluez5`
template (adapters, devices, Connect) plus the GATT services, characteristics, reads, writes
and notifications that real peripherals have, and peripherals that vanish and return.

Run with the system Python (python3-dbus, python3-gi, python3-dbusmock from Debian) while
DBUS_SYSTEM_BUS_ADDRESS names a private bus. It owns `org.bluez` there, prints `READY` and
then answers one JSON command per line on stdin with one JSON line on stdout:

  {"cmd": "adapter", "name": "hci0"}
  {"cmd": "device", "adapter": "hci0", "address": "AA:..", "name": "Thermo",
   "services": [{"uuid": "..", "characteristics": [{"uuid": "..", "flags": ["read", "notify"],
                                                     "value": [1, 2]}]}]}
  {"cmd": "notify", "address": "AA:..", "uuid": "..", "value": [..]}   -> {"at": unix seconds}
  {"cmd": "set", "address": "AA:..", "uuid": "..", "value": [..]}      (no notification)
  {"cmd": "get", "address": "AA:..", "uuid": ".."}  -> {"value", "writes", "notifying", "reads"}
  {"cmd": "vanish", "address": "AA:..", "delay_ms": 300}
  {"cmd": "return", "address": "AA:.."}
  {"cmd": "stats", "address": "AA:.."}  -> {"connects", "disconnects", "connected", "max_connected"}

A vanished device answers its next GATT call after `delay_ms` with org.bluez.Error.Failed
"Not connected", drops the link (Connected false, its GATT objects removed, as bluetoothd does)
and refuses Connect until it returns. The peer exits when stdin closes or the bus goes away.
"""

import json
import os
import sys
import time

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

import dbusmock.mockobject
import dbusmock.testcase
from dbusmock import OBJECT_MANAGER_IFACE
from dbusmock.mockobject import DBusMockObject, objects

DEVICE_IFACE = 'org.bluez.Device1'
SERVICE_IFACE = 'org.bluez.GattService1'
CHAR_IFACE = 'org.bluez.GattCharacteristic1'
ERROR_FAILED = 'org.bluez.Error.Failed'


class Peripheral:
    """The state of one mocked peripheral."""

    def __init__(self, path, spec):
        self.path = path
        self.spec = spec
        self.vanished = False
        self.delay_ms = 0
        self.connects = 0
        self.disconnects = 0
        # uuid (lower case) -> {'path', 'value', 'writes', 'notifying', 'reads'}
        self.chars = {}
        for service in spec.get('services', []):
            for char in service.get('characteristics', []):
                self.chars[char['uuid'].lower()] = {
                    'path': None,
                    'value': list(char.get('value', [])),
                    'writes': [],
                    'notifying': False,
                    'reads': 0,
                }


PERIPHERALS = {}  # device path -> Peripheral
STATS = {'connected': 0, 'max_connected': 0}


def device_path(adapter, address):
    return f"/org/bluez/{adapter}/dev_{address.upper().replace(':', '_')}"


def emit_props(obj, iface, changed):
    obj.EmitSignal(dbus.PROPERTIES_IFACE, 'PropertiesChanged', 'sa{sv}as', [iface, changed, []])


def set_connected(device, peripheral, connected):
    props = device.props[DEVICE_IFACE]
    if bool(props['Connected']) == connected:
        return
    props['Connected'] = dbus.Boolean(connected, variant_level=1)
    STATS['connected'] += 1 if connected else -1
    STATS['max_connected'] = max(STATS['max_connected'], STATS['connected'])
    emit_props(device, DEVICE_IFACE, {'Connected': dbus.Boolean(connected, variant_level=1)})
    if connected:
        add_gatt(device, peripheral)
        props['ServicesResolved'] = dbus.Boolean(True, variant_level=1)
        emit_props(device, DEVICE_IFACE, {'ServicesResolved': dbus.Boolean(True, variant_level=1)})
    else:
        props['ServicesResolved'] = dbus.Boolean(False, variant_level=1)
        emit_props(device, DEVICE_IFACE, {'ServicesResolved': dbus.Boolean(False, variant_level=1)})
        remove_gatt(peripheral)


def add_gatt(device, peripheral):
    manager = objects['/']
    handle = 1
    for s_index, service in enumerate(peripheral.spec.get('services', [])):
        s_path = f'{peripheral.path}/service{handle:04x}'
        manager.AddObject(s_path, SERVICE_IFACE, {
            'UUID': dbus.String(service['uuid'].lower(), variant_level=1),
            'Device': dbus.ObjectPath(peripheral.path, variant_level=1),
            'Primary': dbus.Boolean(True, variant_level=1),
            'Includes': dbus.Array([], signature='o', variant_level=1),
            'Handle': dbus.UInt16(handle, variant_level=1),
        }, [])
        manager.object_manager_emit_added(s_path)
        handle += 1
        for char in service.get('characteristics', []):
            state = peripheral.chars[char['uuid'].lower()]
            c_path = f'{s_path}/char{handle:04x}'
            state['path'] = c_path
            manager.AddObject(c_path, CHAR_IFACE, {
                'UUID': dbus.String(char['uuid'].lower(), variant_level=1),
                'Service': dbus.ObjectPath(s_path, variant_level=1),
                'Value': dbus.Array(state['value'], signature='y', variant_level=1),
                'Notifying': dbus.Boolean(False, variant_level=1),
                'Flags': dbus.Array(char.get('flags', ['read']), signature='s', variant_level=1),
                'Handle': dbus.UInt16(handle, variant_level=1),
                'MTU': dbus.UInt16(247, variant_level=1),
            }, [
                ('ReadValue', 'a{sv}', 'ay', make_read(peripheral, state)),
                ('WriteValue', 'aya{sv}', '', make_write(peripheral, state)),
                ('StartNotify', '', '', make_notify(peripheral, state, True)),
                ('StopNotify', '', '', make_notify(peripheral, state, False)),
            ])
            manager.object_manager_emit_added(c_path)
            handle += 2
        del s_index


def remove_gatt(peripheral):
    manager = objects['/']
    paths = sorted((p for p in objects if p.startswith(peripheral.path + '/')), reverse=True)
    for path in paths:
        interfaces = list(objects[path].props.keys())
        manager.RemoveObject(path)
        manager.EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesRemoved', 'oas',
                           [dbus.ObjectPath(path), dbus.Array(interfaces, signature='s')])
    for state in peripheral.chars.values():
        state['path'] = None
        state['notifying'] = False


def fail_if_vanished(peripheral):
    """A vanished device: wait as a radio would, then drop the link and fail."""
    if not peripheral.vanished:
        return
    time.sleep(peripheral.delay_ms / 1000.0)
    device = objects.get(peripheral.path)
    if device is not None and bool(device.props[DEVICE_IFACE]['Connected']):
        # Reply first: the link loss follows on the next turn of the main loop.
        GLib.idle_add(lambda: (set_connected(device, peripheral, False), False)[1])
    raise dbus.exceptions.DBusException('Not connected', name=ERROR_FAILED)


def make_read(peripheral, state):
    def read_value(_char, options):
        fail_if_vanished(peripheral)
        state['reads'] += 1
        offset = int(options.get('offset', 0))
        return dbus.Array(state['value'][offset:], signature='y')
    return read_value


def make_write(peripheral, state):
    def write_value(_char, value, options):
        fail_if_vanished(peripheral)
        offset = int(options.get('offset', 0))
        data = [int(b) for b in value]
        kind = str(options.get('type', 'request'))
        current = state['value']
        if offset > len(current):
            raise dbus.exceptions.DBusException('Invalid offset', name='org.bluez.Error.InvalidOffset')
        state['value'] = current[:offset] + data + current[offset + len(data):]
        state['writes'].append({'value': data, 'type': kind, 'offset': offset})
    return write_value


def make_notify(peripheral, state, start):
    def notify(char):
        fail_if_vanished(peripheral)
        state['notifying'] = start
        char.props[CHAR_IFACE]['Notifying'] = dbus.Boolean(start, variant_level=1)
        emit_props(char, CHAR_IFACE, {'Notifying': dbus.Boolean(start, variant_level=1)})
    return notify


def make_connect(peripheral):
    def connect(device):
        if peripheral.vanished:
            time.sleep(peripheral.delay_ms / 1000.0)
            raise dbus.exceptions.DBusException('le-connection-abort-by-local', name=ERROR_FAILED)
        if bool(device.props[DEVICE_IFACE]['Connected']):
            raise dbus.exceptions.DBusException('Already Connected', name='org.bluez.Error.AlreadyConnected')
        peripheral.connects += 1
        set_connected(device, peripheral, True)
    return connect


def make_disconnect(peripheral):
    def disconnect(device):
        if bool(device.props[DEVICE_IFACE]['Connected']):
            peripheral.disconnects += 1
        set_connected(device, peripheral, False)
    return disconnect


def add_device(cmd):
    manager = objects['/']
    adapter = cmd.get('adapter', 'hci0')
    address = cmd['address'].upper()
    path = manager.AddDevice(adapter, address, cmd.get('name', ''))
    peripheral = Peripheral(path, cmd)
    PERIPHERALS[path] = peripheral
    device = objects[path]
    device.AddMethods(DEVICE_IFACE, [
        ('Connect', '', '', make_connect(peripheral)),
        ('Disconnect', '', '', make_disconnect(peripheral)),
    ])
    return {'path': path}


def find(cmd):
    for peripheral in PERIPHERALS.values():
        if objects[peripheral.path].props[DEVICE_IFACE]['Address'].upper() == cmd['address'].upper():
            return peripheral
    raise KeyError(f"no device {cmd['address']}")


def char_state(cmd):
    peripheral = find(cmd)
    return peripheral, peripheral.chars[cmd['uuid'].lower()]


def handle(cmd):
    kind = cmd.get('cmd')
    if kind == 'adapter':
        objects['/'].AddAdapter(cmd['name'], cmd.get('alias', 'edgetwin test'))
        return {}
    if kind == 'device':
        return add_device(cmd)
    if kind in ('notify', 'set'):
        peripheral, state = char_state(cmd)
        state['value'] = [int(b) for b in cmd['value']]
        at = time.time()
        if kind == 'notify' and state['notifying'] and state['path']:
            char = objects[state['path']]
            value = dbus.Array(state['value'], signature='y', variant_level=1)
            char.props[CHAR_IFACE]['Value'] = value
            emit_props(char, CHAR_IFACE, {'Value': value})
            return {'at': at, 'sent': True}
        return {'at': at, 'sent': False}
    if kind == 'get':
        _, state = char_state(cmd)
        return {'value': state['value'], 'writes': state['writes'],
                'notifying': state['notifying'], 'reads': state['reads']}
    if kind == 'vanish':
        peripheral = find(cmd)
        peripheral.vanished = True
        peripheral.delay_ms = int(cmd.get('delay_ms', 0))
        return {}
    if kind == 'return':
        find(cmd).vanished = False
        return {}
    if kind == 'stats':
        peripheral = find(cmd)
        device = objects[peripheral.path]
        return {'connects': peripheral.connects, 'disconnects': peripheral.disconnects,
                'connected': bool(device.props[DEVICE_IFACE]['Connected']),
                'max_connected': STATS['max_connected']}
    raise ValueError(f'unknown command {kind!r}')


def on_stdin(source, condition):
    line = source.readline()
    if not line:
        loop.quit()
        return False
    line = line.strip()
    if not line:
        return True
    try:
        answer = handle(json.loads(line))
    except Exception as error:  # the test reads the reason
        answer = {'error': f'{type(error).__name__}: {error}'}
    sys.stdout.write(json.dumps(answer) + '\n')
    sys.stdout.flush()
    return True


dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbusmock.testcase.DBusTestCase.get_dbus(True)
bus_name = dbus.service.BusName('org.bluez', bus, allow_replacement=True,
                                replace_existing=True, do_not_queue=True)
main = DBusMockObject(bus_name, '/', OBJECT_MANAGER_IFACE, {}, os.devnull, True)
objects['/'] = main
main.AddTemplate('bluez5', {})

loop = GLib.MainLoop()
bus.add_signal_receiver(lambda *_: loop.quit(), signal_name='Disconnected',
                        path='/org/freedesktop/DBus/Local',
                        dbus_interface='org.freedesktop.DBus.Local')
GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
sys.stdout.write('READY\n')
sys.stdout.flush()
loop.run()
