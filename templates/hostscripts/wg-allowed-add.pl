# wg-allowed-add INTERFACE PUBLIC_KEY CIDRS [PUBLIC_KEY CIDRS]...: adds CIDRS (a comma-separated
# list) to the AllowedIPs of the peer PUBLIC_KEY of INTERFACE, for each pair, and leaves the
# AllowedIPs each peer has in place. A CIDR that another peer holds moves to this one, in one step.
#
# `wg set ... allowed-ips` cannot do this with the wg of Debian 12 (1.0.20210914): it always flags
# the peer "replace AllowedIPs", and the kernel (or wireguard-go) then removes all of the peer's
# AllowedIPs before it adds the new list, so a packet to or from the peer in that instant matches no
# peer and is dropped. This program sends the same request without that flag: to the kernel over
# generic netlink (WG_CMD_SET_DEVICE), to wireguard-go over its control socket (update_only, no
# replace_allowed_ips), as wg itself chooses between them; one request per peer. Each peer must
# exist: the requests are flagged "update only", and nothing is done for a peer that is not there.
#
# Only perl-base modules: perl-base is Essential on Debian, the full perl may not be installed.
use strict;
use warnings;
use Socket qw(inet_pton pack_sockaddr_un AF_INET AF_INET6 AF_UNIX SOCK_RAW SOCK_STREAM);

my ($interface, @pairs) = @ARGV;
die "usage: wg-allowed-add INTERFACE PUBLIC_KEY CIDRS [PUBLIC_KEY CIDRS]...\n"
  unless defined $interface && @pairs && @pairs % 2 == 0;

# A WireGuard key in base64: 43 characters and "=", 256 bits.
sub key_bytes {
  my ($text) = @_;
  my $alphabet = join '', 'A' .. 'Z', 'a' .. 'z', '0' .. '9', '+', '/';
  die "wg-allowed-add: $text is not a WireGuard public key\n"
    unless $text =~ m{^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$};
  my $bits = join '', map { sprintf '%06b', index($alphabet, $_) } split //, substr($text, 0, 43);
  return pack 'B256', $bits;
}

sub cidr {
  my ($text) = @_;
  my ($address, $mask) = $text =~ m{^([0-9A-Fa-f.:]+)/([0-9]{1,3})$}
    or die "wg-allowed-add: $text is not a CIDR\n";
  my $family = index($address, ':') >= 0 ? AF_INET6 : AF_INET;
  my $bytes = inet_pton($family, $address);
  die "wg-allowed-add: $text is not a CIDR\n" unless defined $bytes && $mask <= 8 * length $bytes;
  return { text => $text, family => $family, bytes => $bytes, mask => $mask };
}

my @peers;
while (my ($public, $list) = splice @pairs, 0, 2) {
  push @peers, { key => key_bytes($public), allowed => [ map { cidr($_) } split /,/, $list ] };
}
my $control = "/var/run/wireguard/$interface.sock";

if (-S $control) {
  # wireguard-go's control protocol: key=value lines; a blank line ends a request and its reply.
  socket(my $socket, AF_UNIX, SOCK_STREAM, 0) or die "wg-allowed-add: $control: $!\n";
  connect($socket, pack_sockaddr_un($control)) or die "wg-allowed-add: $control: $!\n";
  for my $peer (@peers) {
    syswrite $socket, join '', "set=1\npublic_key=", unpack('H*', $peer->{key}), "\nupdate_only=true\n",
      (map { "allowed_ip=$_->{text}\n" } @{ $peer->{allowed} }), "\n";
    my $reply = '';
    while ($reply !~ /\n\n$/) {
      sysread($socket, $reply, 4096, length $reply) or last;
    }
    die "wg-allowed-add: $interface: wireguard-go answered: ", ($reply eq '' ? "nothing\n" : $reply)
      unless $reply eq "errno=0\n\n";
  }
  exit 0;
}

# Generic netlink, as in <linux/netlink.h>, <linux/genetlink.h> and <linux/wireguard.h>.
use constant {
  AF_NETLINK => 16, NETLINK_GENERIC => 16, NLMSG_ERROR => 2, NLM_F_REQUEST => 1, NLM_F_ACK => 4,
  NLA_F_NESTED => 0x8000, GENL_ID_CTRL => 0x10, CTRL_CMD_GETFAMILY => 3, CTRL_ATTR_FAMILY_ID => 1,
  CTRL_ATTR_FAMILY_NAME => 2, WG_CMD_SET_DEVICE => 1, WGDEVICE_A_IFNAME => 2, WGDEVICE_A_PEERS => 8,
  WGPEER_A_PUBLIC_KEY => 1, WGPEER_A_FLAGS => 3, WGPEER_A_ALLOWEDIPS => 9, WGPEER_F_UPDATE_ONLY => 4,
  WGALLOWEDIP_A_FAMILY => 1, WGALLOWEDIP_A_IPADDR => 2, WGALLOWEDIP_A_CIDR_MASK => 3,
};

sub attribute {
  my ($type, $payload) = @_;
  my $length = 4 + length $payload;
  return pack('SS', $length, $type) . $payload . ("\0" x ((4 - $length % 4) % 4));
}

sub nested {
  my ($type, @attributes) = @_;
  return attribute($type | NLA_F_NESTED, join '', @attributes);
}

socket(my $netlink, AF_NETLINK, SOCK_RAW, NETLINK_GENERIC) or die "wg-allowed-add: netlink: $!\n";
bind($netlink, pack('SSLL', AF_NETLINK, 0, 0, 0)) or die "wg-allowed-add: netlink: $!\n";
my $sequence = 0;

# Sends one request (acknowledged) and returns the payloads of its replies; dies with the kernel's
# error, if any.
sub request {
  my ($what, $type, $command, @attributes) = @_;
  $sequence++;
  my $message = pack('CCS', $command, 1, 0) . join '', @attributes;
  send($netlink, pack('LSSLL', 16 + length $message, $type, NLM_F_REQUEST | NLM_F_ACK, $sequence, 0) . $message, 0)
    or die "wg-allowed-add: $what: $!\n";
  my @replies;
  while (1) {
    defined recv($netlink, my $buffer, 1 << 20, 0) or die "wg-allowed-add: $what: $!\n";
    while (length $buffer >= 16) {
      my ($length, $kind, undef, $number) = unpack('LSSL', $buffer);
      die "wg-allowed-add: $what: a malformed reply\n" if $length < 16 || $length > length $buffer;
      my $body = substr($buffer, 16, $length - 16);
      $buffer = length $buffer > (($length + 3) & ~3) ? substr($buffer, ($length + 3) & ~3) : '';
      next unless $number == $sequence;
      if ($kind == NLMSG_ERROR) {
        my $error = -unpack('l', $body);
        return @replies if $error == 0;
        local $! = $error;
        die "wg-allowed-add: $what: $!\n";
      }
      push @replies, substr($body, 4);
    }
  }
}

my ($family_reply) = request("the kernel's WireGuard family", GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
  attribute(CTRL_ATTR_FAMILY_NAME, "wireguard\0"));
my $family;
for (my $rest = $family_reply // ''; length $rest >= 4;) {
  my ($length, $type) = unpack('SS', $rest);
  last if $length < 4;
  $family = unpack('S', substr($rest, 4, 2)) if ($type & ~NLA_F_NESTED) == CTRL_ATTR_FAMILY_ID;
  $rest = length $rest > (($length + 3) & ~3) ? substr($rest, ($length + 3) & ~3) : '';
}
die "wg-allowed-add: the kernel did not name its WireGuard family\n" unless defined $family;

# An attribute's length is 16 bits: a peer's CIDRs go in requests of at most 256, each adding to the
# ones before (as wg splits a long list).
for my $peer (@peers) {
  my @allowed = @{ $peer->{allowed} };
  while (my @chunk = splice @allowed, 0, 256) {
    request($interface, $family, WG_CMD_SET_DEVICE,
      attribute(WGDEVICE_A_IFNAME, "$interface\0"),
      nested(WGDEVICE_A_PEERS,
        nested(0,
          attribute(WGPEER_A_PUBLIC_KEY, $peer->{key}),
          attribute(WGPEER_A_FLAGS, pack('L', WGPEER_F_UPDATE_ONLY)),
          nested(WGPEER_A_ALLOWEDIPS,
            map {
              nested(0,
                attribute(WGALLOWEDIP_A_FAMILY, pack('S', $_->{family})),
                attribute(WGALLOWEDIP_A_IPADDR, $_->{bytes}),
                attribute(WGALLOWEDIP_A_CIDR_MASK, pack('C', $_->{mask})))
            } @chunk))));
  }
}
