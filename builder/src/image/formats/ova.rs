//! `disk.ova`: a virtual appliance for VMware (vSphere, Workstation, Fusion):
//! a ustar archive of an OVF 1.0 descriptor, first as OVF requires, and the
//! stream-optimized VMDK it names. The descriptor is the least a VMware
//! import needs: the disk and its capacity, UEFI firmware, an LSI Logic SCSI
//! controller, a VMXNET3 network card on "VM Network", and [`CPUS`] and
//! [`MEMORY_MIB`] as defaults that the importer adjusts.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::super::disk::run;
use super::{vmdk, Conversion};

/// The default virtual hardware: kubeadm's minimum for a control-plane
/// node is 2 CPUs and about 1.7 GiB of memory.
const CPUS: u32 = 2;
const MEMORY_MIB: u32 = 4096;
/// The VMDK's name in the archive and the descriptor.
const VMDK: &str = "disk.vmdk";

pub(super) fn write(c: &Conversion, out: &Path) -> Result<()> {
    let role_dir = out.parent().context("the OVA has no folder")?;
    let work = tempfile::Builder::new()
        .prefix(".ova-")
        .tempdir_in(role_dir)
        .with_context(|| format!("creating a temporary folder in {}", role_dir.display()))?;
    // This build's disk.vmdk when formats listed vmdk before ova (each
    // artifact is complete before the next is begun), else one of its own:
    // both are the same bytes.
    let made = role_dir.join(VMDK);
    let vmdk_dir = match made.exists() {
        true => role_dir,
        false => {
            vmdk::write(c, &work.path().join(VMDK))?;
            work.path()
        }
    };
    let vmdk_len = fs::metadata(vmdk_dir.join(VMDK))
        .with_context(|| format!("reading {}", vmdk_dir.join(VMDK).display()))?
        .len();
    let capacity = fs::metadata(c.raw)
        .with_context(|| format!("reading {}", c.raw.display()))?
        .len();
    let ovf_name = format!("kiln-{}.ovf", c.role);
    let ovf = work.path().join(&ovf_name);
    fs::write(&ovf, descriptor(&c.role.to_string(), vmdk_len, capacity))
        .with_context(|| format!("writing {}", ovf.display()))?;
    let mut tar = c.tar("ustar");
    tar.arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(work.path())
        .arg(&ovf_name)
        .arg("-C")
        .arg(vmdk_dir)
        .arg(VMDK);
    run(&mut tar, "tar", "tar").map(drop)
}

/// The OVF descriptor of the role's VM; the `rasd:` elements of each item
/// are in the CIM schema's (alphabetical) order, which validators check.
fn descriptor(role: &str, vmdk_len: u64, capacity: u64) -> String {
    let name = format!("kiln-{role}");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:id="file1" ovf:href="{VMDK}" ovf:size="{vmdk_len}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The network of the node's DHCP lease</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A kiln {role} node</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian10_64Guest">
      <Info>Debian GNU/Linux, 64-bit</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{CPUS} virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{CPUS}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>{MEMORY_MIB} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{MEMORY_MIB}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VMXNET3 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_names_the_disk_its_capacity_and_uefi() {
        let ovf = descriptor("etcd", 1234, 5 << 30);
        assert!(ovf.contains(r#"ovf:href="disk.vmdk" ovf:size="1234""#));
        assert!(ovf.contains(r#"ovf:capacity="5368709120" ovf:capacityAllocationUnits="byte""#));
        assert!(ovf.contains(r#"vmw:key="firmware" vmw:value="efi""#));
        assert!(ovf.contains("<Name>kiln-etcd</Name>"));
    }
}
